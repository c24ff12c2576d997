"""The longest duration any setting, spec or query may name.

Ten years: longer than any window, bake time or TTL means anything, and far inside what `datetime.timedelta`
and the clocks can represent (a query for ``window=1e300`` seconds once made a 500 of an OverflowError,
found by schemathesis). Every duration field says ``le=MAX_SECONDS``, so such input is a 422 naming the field.
"""

MAX_SECONDS = 10 * 366 * 86400
