-- The default sample quotas (data only): per customer and per chain, units within 90 days.
-- Operations change them with UPDATE sample_quota (see the README, "Samples"); rerunning keeps changes.
-- depends: 0022_samples_functions
set lock_timeout = '5s';
set statement_timeout = '60s';

insert into sample_quota (
    subject,
    max_units,
    window_days
)
values
    ('CUSTOMER', 24, 90),
    ('CHAIN', 120, 90)
on conflict (subject) do nothing;
