-- name: seed_chains!
insert into chain (
    name,
    description
)
values
    ('Alpenblick Hotels', 'Hotel group with restaurants in the Alpine region'),
    ('Pasta Fresca', 'Fast-casual Italian restaurant chain'),
    ('GastroCampus', 'Contract caterer running company and university canteens')
on conflict ((lower(name))) do nothing;

-- name: seed_customers!
-- Deterministic demo customers K-100001 .. K-(100000 + count); every fourth one is an outlet of
-- one of the three demo chains. Existing numbers are left as they are.
with chains as (
    select
        array_agg(c.id order by c.name) as ids
    from chain as c
    where c.name in ('Alpenblick Hotels', 'Pasta Fresca', 'GastroCampus')
),
words as (
    select
        array['Gasthaus', 'Restaurant', 'Bistro', 'Hotel', 'Kantine', 'Trattoria', 'Brasserie',
              'Landgasthof', 'Café', 'Wirtshaus'] as kinds,
        array['Zur Linde', 'Am Markt', 'Sonne', 'Krone', 'Adler', 'Seeblick', 'Stadtgarten',
              'Rathaus', 'Alte Mühle', 'Hirschen', 'Post', 'Bären', 'Lamm', 'Rose', 'Schwan',
              'Waldhorn', 'Ochsen', 'Engel', 'Löwen', 'Stern'] as names,
        array['München', 'Stuttgart', 'Köln', 'Hamburg', 'Berlin', 'Frankfurt am Main', 'Leipzig',
              'Nürnberg', 'Freiburg', 'Dresden', 'Wien', 'Salzburg', 'Zürich', 'Basel'] as cities,
        array['DE', 'DE', 'DE', 'DE', 'DE', 'DE', 'DE', 'DE', 'DE', 'DE', 'AT', 'AT', 'CH', 'CH'] as countries,
        array['anna.schmidt', 'jonas.weber', 'lea.fischer', 'maximilian.wagner', 'sophie.becker'] as reps
)
insert into customer (
    customer_number,
    name,
    type,
    status,
    chain_id,
    owner,
    street,
    postal_code,
    city,
    country
)
select
    'K-' || (100000 + g),
    w.kinds[1 + mod(g, 10)] || ' ' || w.names[1 + mod(g / 10, 20)] || ' ' || w.cities[1 + mod(g / 200, 14)]
        || case when g > 2800 then ' ' || g else '' end,
    (array['RESTAURANT', 'RESTAURANT', 'RESTAURANT', 'HOTEL', 'CANTEEN', 'RESTAURANT', 'RESTAURANT',
           'RESTAURANT', 'CATERING', 'OTHER'])[1 + mod(g, 10)]::customer_type,
    (array['LEAD', 'PROSPECT', 'ACTIVE', 'ACTIVE', 'ACTIVE', 'INACTIVE'])[1 + mod(g, 6)]::customer_status,
    case when mod(g, 4) = 0 then ch.ids[1 + mod(g / 4, 3)] end,
    w.reps[1 + mod(g, 5)],
    (array['Hauptstraße', 'Bahnhofstraße', 'Marktplatz', 'Kirchgasse', 'Seestraße'])[1 + mod(g, 5)] || ' ' || (1 + mod(g, 120)),
    lpad((mod(10000 + g * 37, 90000) + 10000)::text, 5, '0'),
    w.cities[1 + mod(g / 200, 14)],
    w.countries[1 + mod(g / 200, 14)]
from generate_series(1, :customers) as g
cross join words as w
cross join chains as ch
on conflict (customer_number) do nothing;

-- name: seed_contacts!
-- One head chef per demo customer that has no contact yet.
insert into contact (
    customer_id,
    first_name,
    last_name,
    job_role,
    email,
    phone
)
select
    c.id,
    (array['Lukas', 'Marie', 'Felix', 'Hannah', 'Paul', 'Mia', 'Elias', 'Emma'])[1 + mod(abs(hashtext(c.customer_number)), 8)],
    (array['Müller', 'Schneider', 'Hoffmann', 'Koch', 'Richter', 'Klein', 'Wolf', 'Neumann'])[1 + mod(abs(hashtext(c.id::text)), 8)],
    'HEAD_CHEF',
    'kueche.' || lower(replace(c.customer_number, '-', '')) || '@example.com',
    '+49 89 ' || (1000000 + mod(abs(hashtext(c.customer_number)), 8999999))
from customer as c
where starts_with(c.customer_number, 'K-1')
  and not exists (
      select 1
      from contact as ct
      where ct.customer_id = c.id
  );

-- name: seed_counts^
select
    (select count(*) from chain) as chains,
    (select count(*) from customer) as customers,
    (select count(*) from contact) as contacts;
