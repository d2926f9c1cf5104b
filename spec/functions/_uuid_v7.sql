-- A random (version 4) UUID with its first 48 bits replaced by `at` in milliseconds
-- and its version bits turned from 0100 into 0111 (set_bit counts bits from the right of
-- each byte: bits 52 and 53 are the low bits of byte 6's high nibble).
select encode(
  set_bit(
    set_bit(
      overlay(
        uuid_send(gen_random_uuid())
        placing substring(int8send(floor(extract(epoch from _uuid_v7.at) * 1000)::bigint) from 3)
        from 1 for 6
      ),
      52, 1
    ),
    53, 1
  ),
  'hex'
)::uuid
