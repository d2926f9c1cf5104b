-- pgflow's floor(base_delay * 2^attempts_count), capped at one hour. The exponent is
-- clamped first so the power never overflows numeric, whatever attempts_count is.
select least(
  floor(greatest(base_delay, 0) * power(2::numeric, least(greatest(attempts_count, 0), 64))),
  3600
)::integer
