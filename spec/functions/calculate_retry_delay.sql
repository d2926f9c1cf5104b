-- pgflow's floor(base_delay * 2^attempts_count), capped at one hour (and never negative).
-- The exponent is clamped to +/-2048 before the power so it can neither overflow numeric
-- nor the final integer: for any base_delay that fits an integer the result is the same
-- as the unclamped formula (2^2048 is far past the cap, 2^-2048 far below one second).
-- least/greatest skip NULLs, so a NULL argument is passed through explicitly, as
-- pgflow's plain formula does.
select case
  when base_delay is null or attempts_count is null then null
  else greatest(
    least(
      floor(base_delay * power(2::numeric, least(greatest(attempts_count, -2048), 2048))),
      3600
    ),
    0
  )::integer
end
