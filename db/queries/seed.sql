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

-- name: seed_products!
-- The Cook&Fresh catalogue: 47 convenience products for professional kitchens, with their EU
-- allergen groups and diet tags. Existing SKUs are left as they are.
insert into product (
    sku,
    name,
    category,
    pack_size,
    unit,
    allergens,
    diet_tags,
    sample_available,
    max_sample_quantity
)
values
    ('CF-1001', 'Kartoffelcremesuppe', 'SOUPS', 2.4, 'KG', '{MILK,CELERY}', '{VEGETARIAN,GLUTEN_FREE}', true, 3),
    ('CF-1002', 'Tomatencremesuppe', 'SOUPS', 2.4, 'KG', '{MILK,CELERY}', '{VEGETARIAN,GLUTEN_FREE}', true, 3),
    ('CF-1003', 'Gulaschsuppe', 'SOUPS', 2.2, 'KG', '{CELERY,CEREALS_CONTAINING_GLUTEN}', '{}', true, 3),
    ('CF-1004', 'Thai-Kokossuppe', 'SOUPS', 2, 'KG', '{SOYBEANS,CELERY}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE}', true, 3),
    ('CF-1005', 'Linsensuppe', 'SOUPS', 2.5, 'KG', '{CELERY}', '{VEGAN,LACTOSE_FREE,HALAL}', true, 3),
    ('CF-1006', 'Champignoncremesuppe', 'SOUPS', 2.4, 'KG', '{MILK,CELERY,CEREALS_CONTAINING_GLUTEN}', '{VEGETARIAN}', true, 3),
    ('CF-1007', 'Muschelcremesuppe', 'SOUPS', 2, 'KG', '{MOLLUSCS,MILK,CELERY}', '{GLUTEN_FREE}', false, 1),
    ('CF-2001', 'Sauce Hollandaise', 'SAUCES', 1, 'L', '{EGGS,MILK}', '{VEGETARIAN,GLUTEN_FREE}', true, 6),
    ('CF-2002', 'Bratensauce dunkel', 'SAUCES', 1.2, 'KG', '{CEREALS_CONTAINING_GLUTEN,CELERY}', '{LACTOSE_FREE}', true, 5),
    ('CF-2003', 'Rahmsauce', 'SAUCES', 1, 'KG', '{MILK,CEREALS_CONTAINING_GLUTEN}', '{VEGETARIAN}', true, 5),
    ('CF-2004', 'Pfeffersauce', 'SAUCES', 1, 'KG', '{MILK,CELERY,MUSTARD}', '{}', true, 5),
    ('CF-2005', 'Sauce Béarnaise', 'SAUCES', 1, 'L', '{EGGS,MILK,SULPHUR_DIOXIDE_AND_SULPHITES}', '{VEGETARIAN,GLUTEN_FREE}', true, 6),
    ('CF-2006', 'Currysauce', 'SAUCES', 2, 'L', '{MUSTARD,CELERY}', '{VEGAN,LACTOSE_FREE,HALAL}', true, 4),
    ('CF-2007', 'Tomatensauce Napoli', 'SAUCES', 3, 'KG', '{}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 2),
    ('CF-2008', 'Erdnuss-Satay-Sauce', 'SAUCES', 1, 'L', '{PEANUTS,SOYBEANS,CEREALS_CONTAINING_GLUTEN}', '{VEGAN,LACTOSE_FREE}', true, 4),
    ('CF-3001', 'Gemüsebouillon', 'BASES_AND_BOUILLONS', 1, 'KG', '{CELERY}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 5),
    ('CF-3002', 'Rinderfond', 'BASES_AND_BOUILLONS', 1, 'L', '{CELERY}', '{GLUTEN_FREE,LACTOSE_FREE}', true, 5),
    ('CF-3003', 'Geflügelbrühe', 'BASES_AND_BOUILLONS', 1, 'KG', '{CELERY}', '{GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 5),
    ('CF-3004', 'Fischfond', 'BASES_AND_BOUILLONS', 1, 'L', '{FISH,CELERY}', '{GLUTEN_FREE,LACTOSE_FREE}', true, 5),
    ('CF-3005', 'Demi-Glace', 'BASES_AND_BOUILLONS', 1.1, 'KG', '{CEREALS_CONTAINING_GLUTEN,CELERY,SULPHUR_DIOXIDE_AND_SULPHITES}', '{}', true, 4),
    ('CF-4001', 'Kartoffelgratin', 'SIDE_DISHES', 2.5, 'KG', '{MILK}', '{VEGETARIAN,GLUTEN_FREE}', true, 2),
    ('CF-4002', 'Eierspätzle', 'SIDE_DISHES', 2.5, 'KG', '{EGGS,CEREALS_CONTAINING_GLUTEN}', '{VEGETARIAN,LACTOSE_FREE}', true, 2),
    ('CF-4003', 'Kartoffelpüree', 'SIDE_DISHES', 4, 'KG', '{MILK}', '{VEGETARIAN,GLUTEN_FREE}', true, 2),
    ('CF-4004', 'Semmelknödel', 'SIDE_DISHES', 40, 'PIECES', '{EGGS,MILK,CEREALS_CONTAINING_GLUTEN}', '{VEGETARIAN}', true, 2),
    ('CF-4005', 'Basmati-Gemüsereis', 'SIDE_DISHES', 2, 'KG', '{CELERY}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 3),
    ('CF-4006', 'Rösti-Ecken', 'SIDE_DISHES', 2.5, 'KG', '{}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE}', true, 2),
    ('CF-4007', 'Lupinen-Bratling', 'SIDE_DISHES', 30, 'PIECES', '{LUPIN,CELERY,MUSTARD}', '{VEGAN,LACTOSE_FREE}', true, 2),
    ('CF-5001', 'Rindergulasch', 'READY_MEALS', 2.5, 'KG', '{CELERY,CEREALS_CONTAINING_GLUTEN}', '{LACTOSE_FREE}', true, 2),
    ('CF-5002', 'Chili sin Carne', 'READY_MEALS', 2.5, 'KG', '{CELERY}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 2),
    ('CF-5003', 'Käsespätzle', 'READY_MEALS', 2.5, 'KG', '{EGGS,MILK,CEREALS_CONTAINING_GLUTEN}', '{VEGETARIAN}', true, 2),
    ('CF-5004', 'Hähnchen-Curry', 'READY_MEALS', 2.5, 'KG', '{MILK,MUSTARD,CELERY}', '{GLUTEN_FREE,HALAL}', true, 2),
    ('CF-5005', 'Gemüse-Lasagne', 'READY_MEALS', 3, 'KG', '{MILK,EGGS,CEREALS_CONTAINING_GLUTEN,CELERY}', '{VEGETARIAN}', false, 1),
    ('CF-6001', 'Apfelrotkohl', 'VEGETABLES', 2.9, 'KG', '{SULPHUR_DIOXIDE_AND_SULPHITES}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 3),
    ('CF-6002', 'Weinsauerkraut', 'VEGETABLES', 2.9, 'KG', '{SULPHUR_DIOXIDE_AND_SULPHITES}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 3),
    ('CF-6003', 'Ratatouille', 'VEGETABLES', 2.5, 'KG', '{CELERY}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 2),
    ('CF-6004', 'Rahmspinat', 'VEGETABLES', 2.5, 'KG', '{MILK}', '{VEGETARIAN,GLUTEN_FREE}', true, 2),
    ('CF-7001', 'French Dressing', 'DRESSINGS', 1, 'L', '{EGGS,MUSTARD}', '{VEGETARIAN,GLUTEN_FREE}', true, 6),
    ('CF-7002', 'Balsamico-Dressing', 'DRESSINGS', 1, 'L', '{MUSTARD,SULPHUR_DIOXIDE_AND_SULPHITES}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE}', true, 6),
    ('CF-7003', 'Caesar Dressing', 'DRESSINGS', 1, 'L', '{EGGS,FISH,MILK,MUSTARD}', '{GLUTEN_FREE}', true, 6),
    ('CF-7004', 'Sesam-Soja-Dressing', 'DRESSINGS', 1, 'L', '{SESAME_SEEDS,SOYBEANS,CEREALS_CONTAINING_GLUTEN}', '{VEGAN,LACTOSE_FREE}', true, 6),
    ('CF-8001', 'Mousse au Chocolat', 'DESSERTS', 1, 'KG', '{MILK,SOYBEANS}', '{VEGETARIAN,GLUTEN_FREE}', true, 4),
    ('CF-8002', 'Panna Cotta', 'DESSERTS', 1, 'KG', '{MILK}', '{GLUTEN_FREE}', true, 4),
    ('CF-8003', 'Crème brûlée', 'DESSERTS', 1, 'L', '{MILK,EGGS}', '{VEGETARIAN,GLUTEN_FREE}', true, 4),
    ('CF-8004', 'Apfelstrudel', 'DESSERTS', 12, 'PIECES', '{CEREALS_CONTAINING_GLUTEN,NUTS,MILK}', '{VEGETARIAN}', false, 1),
    ('CF-9001', 'Bratkartoffelgewürz', 'SEASONINGS', 700, 'G', '{MUSTARD,CELERY}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 5),
    ('CF-9002', 'Gyros-Würzmischung', 'SEASONINGS', 600, 'G', '{}', '{VEGAN,GLUTEN_FREE,LACTOSE_FREE,HALAL}', true, 5),
    ('CF-9003', 'Thai-Currypaste rot', 'SEASONINGS', 1, 'KG', '{CRUSTACEANS,FISH}', '{GLUTEN_FREE,LACTOSE_FREE}', true, 3)
on conflict (sku) do nothing;

-- name: seed_counts^
select
    (select count(*) from chain) as chains,
    (select count(*) from customer) as customers,
    (select count(*) from contact) as contacts;

-- name: seed_field_definitions!
-- Field-Bridge: 15 custom fields a food manufacturer's sales operations keep on their
-- customers, 8 of them hot (searchable). Existing keys are left as they are.
insert into field_definition (
    key,
    label,
    description,
    data_type,
    options,
    min_value,
    max_value,
    max_length,
    hot
)
values
    ('cuisine', 'Küche', 'Main cuisine of the kitchen', 'ENUM',
     '{GERMAN,ITALIAN,ASIAN,MEDITERRANEAN,FRENCH,TURKISH,INDIAN,VEGETARIAN,INTERNATIONAL}', null, null, null, true),
    ('seats', 'Sitzplätze', 'Seats indoors', 'INTEGER', null, 0, 5000, null, true),
    ('lunch_covers', 'Mittagessen pro Tag', 'Lunches served on a normal weekday', 'INTEGER', null, 0, 20000, null, true),
    ('delivery_days', 'Liefertage', 'Days the customer takes deliveries', 'MULTI_ENUM',
     '{MON,TUE,WED,THU,FRI,SAT}', null, null, null, true),
    ('purchasing_volume_class', 'Einkaufsvolumen-Klasse', 'A: > 50k EUR a year ... D: < 5k EUR', 'ENUM',
     '{A,B,C,D}', null, null, null, true),
    ('allergen_policy', 'Allergen-Richtlinie', 'How the kitchen handles the 14 EU allergens', 'ENUM',
     '{NONE,LABELLED,STRICT,CERTIFIED}', null, null, null, true),
    ('uses_convenience_products', 'Nutzt Convenience-Produkte', null, 'BOOLEAN', null, null, null, null, true),
    ('competitor_supplier', 'Wettbewerber-Lieferant', 'Main supplier of convenience products today', 'TEXT',
     null, null, null, 100, true),
    ('opening_year', 'Eröffnungsjahr', null, 'INTEGER', null, 1800, 2100, null, false),
    ('last_tasting_date', 'Letzte Verkostung', 'Date of the last product tasting on site', 'DATE',
     null, null, null, null, false),
    ('annual_purchase_volume_eur', 'Jahreseinkauf (EUR)', 'Estimated yearly purchases from us', 'NUMBER',
     null, 0, null, null, false),
    ('kitchen_equipment', 'Küchenausstattung', null, 'MULTI_ENUM',
     '{COMBI_STEAMER,TILTING_PAN,BLAST_CHILLER,SOUS_VIDE,PACOJET}', null, null, null, false),
    ('menu_change_frequency', 'Kartenwechsel', null, 'ENUM', '{DAILY,WEEKLY,MONTHLY,SEASONAL}', null, null, null, false),
    ('head_chef_training', 'Ausbildung Küchenchef', 'Where the head chef trained', 'TEXT', null, null, null, 200, false),
    ('notes', 'Notizen', 'Free notes of the field team', 'TEXT', null, null, null, 500, false)
on conflict (key) do nothing;

-- name: seed_field_jobs!
-- A MAKE_HOT job for every hot field that has none yet (the seed runs them right after).
insert into field_job (
    field_key,
    action
)
select
    d.key,
    'MAKE_HOT'
from field_definition as d
where d.hot
  and d.projection = 'NONE'
  and not exists (
      select 1
      from field_job as j
      where j.field_key = d.key
  );

-- name: seed_field_values!
-- Deterministic values for the demo customers that have none yet (derived from the customer
-- number, shaped by the customer type); about one value in ten is left out.
update customer as c
set
    fields = jsonb_strip_nulls(jsonb_build_object(
        'cuisine', case
            when c.type = 'CANTEEN' then (array['GERMAN', 'INTERNATIONAL', 'MEDITERRANEAN'])[1 + mod(abs(hashtext(c.customer_number || ':cu')), 3)]
            else (array['GERMAN', 'ITALIAN', 'ASIAN', 'MEDITERRANEAN', 'FRENCH', 'TURKISH', 'INDIAN', 'VEGETARIAN',
                        'INTERNATIONAL', 'GERMAN', 'ITALIAN', 'GERMAN'])[1 + mod(abs(hashtext(c.customer_number || ':cu')), 12)]
        end,
        'seats', case c.type
            when 'CANTEEN' then 120 + mod(abs(hashtext(c.customer_number || ':se')), 600)
            when 'HOTEL' then 60 + mod(abs(hashtext(c.customer_number || ':se')), 240)
            else 20 + mod(abs(hashtext(c.customer_number || ':se')), 160)
        end,
        'lunch_covers', case
            when mod(abs(hashtext(c.customer_number || ':lc')), 10) = 0 then null
            when c.type = 'CANTEEN' then 200 + mod(abs(hashtext(c.customer_number || ':lc')), 1800)
            else 10 + mod(abs(hashtext(c.customer_number || ':lc')), 190)
        end,
        'delivery_days', (
            select
                jsonb_agg(x.day order by x.n)
            from unnest(array['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT']) with ordinality as x (day, n)
            where mod(abs(hashtext(c.customer_number || ':' || x.day)), 5) < 2
        ),
        'purchasing_volume_class', (array['A', 'B', 'B', 'C', 'C', 'C', 'D', 'D', 'D', 'D'])[1 + mod(abs(hashtext(c.customer_number || ':pv')), 10)],
        'allergen_policy', (array['NONE', 'LABELLED', 'LABELLED', 'STRICT', 'CERTIFIED'])[1 + mod(abs(hashtext(c.customer_number || ':al')), 5)],
        'uses_convenience_products', mod(abs(hashtext(c.customer_number || ':co')), 3) > 0,
        'competitor_supplier', (array['Metro Cash & Carry', 'Transgourmet', 'Chefs Culinar', 'Selgros', 'Hamberger Großmarkt',
                                      'Intergast', 'Kastner', null])[1 + mod(abs(hashtext(c.customer_number || ':cs')), 8)],
        'opening_year', 1950 + mod(abs(hashtext(c.customer_number || ':oy')), 75),
        'last_tasting_date', case
            when mod(abs(hashtext(c.customer_number || ':lt')), 3) > 0
                then to_char(date '2024-01-01' + mod(abs(hashtext(c.customer_number || ':lt')), 700), 'YYYY-MM-DD')
        end,
        'annual_purchase_volume_eur', round(cast(1000 + mod(abs(hashtext(c.customer_number || ':av')), 80000) as numeric) * 1.5, 2),
        'kitchen_equipment', (
            select
                jsonb_agg(x.item order by x.n)
            from unnest(array['COMBI_STEAMER', 'TILTING_PAN', 'BLAST_CHILLER', 'SOUS_VIDE', 'PACOJET']) with ordinality as x (item, n)
            where mod(abs(hashtext(c.customer_number || ':' || x.item)), 4) = 0
        ),
        'menu_change_frequency', (array['DAILY', 'WEEKLY', 'MONTHLY', 'SEASONAL', 'SEASONAL'])[1 + mod(abs(hashtext(c.customer_number || ':mc')), 5)],
        'head_chef_training', (array['Hotelfachschule Heidelberg', 'IHK Köln', 'Ecole Ducasse', 'Hotelfachschule Bad Wiessee', null, null])[1 + mod(abs(hashtext(c.customer_number || ':hc')), 6)]
    )),
    fields_version = c.fields_version + 1
where starts_with(c.customer_number, 'K-1')
  and c.fields = cast('{}' as jsonb);

-- name: seed_activities!
-- A sales cycle for each of the first 60 demo customers that has no activity yet (not archived):
-- an introduction call weeks ago, a kitchen visit with the head chef and two products shown and
-- a follow-up (overdue for some), and for every third customer a tasting planned. Times relative
-- to now; the triggers write the events and the customers' facts.
with targets as (
    select
        c.id,
        coalesce(c.owner, 'seed') as owner,
        cast(substr(c.customer_number, 3) as bigint) - 100000 as g,
        array(
            select
                k.id
            from contact as k
            where k.customer_id = c.id
            order by k.created_at, k.id
            limit 2
        ) as contacts,
        array(
            select
                p.id
            from product as p
            order by p.sku
            limit 2
            offset mod(cast(substr(c.customer_number, 3) as bigint), 20)
        ) as products
    from customer as c
    where c.customer_number = any (array(select 'K-' || n from generate_series(100001, 100060) as n))
      and c.status <> 'ARCHIVED'
      and not exists (select 1 from activity as a where a.customer_id = c.id)
)
insert into activity (
    type,
    customer_id,
    status,
    occurred_at,
    planned_at,
    subject,
    notes,
    outcome,
    next_step,
    follow_up_at,
    owner,
    created_by,
    direction,
    duration_seconds,
    reached,
    visit_kind,
    location,
    participants,
    products_presented
)
select
    cast('CALL' as activity_type),
    t.id,
    cast('DONE' as activity_status),
    date_trunc('minute', now()) - make_interval(days => cast(35 + mod(t.g, 20) as integer)),
    cast(null as timestamptz),
    'Introduction call',
    'Introduced the Cook&Fresh range; the kitchen is open to a visit.',
    cast('NEUTRAL' as activity_outcome),
    'Arrange a kitchen visit',
    cast(null as timestamptz),
    t.owner,
    'seed',
    cast('OUTBOUND' as call_direction),
    180 + 30 * mod(t.g, 10),
    true,
    cast(null as visit_kind),
    cast(null as text),
    cast('{}' as uuid[]),
    cast('{}' as uuid[])
from targets as t
union all
select
    'VISIT',
    t.id,
    'DONE',
    date_trunc('minute', now()) - make_interval(days => cast(10 + mod(t.g, 7) as integer)),
    null,
    'Kitchen visit',
    'Walked the kitchen with the head chef; interested in convenience bases for the lunch service.',
    'POSITIVE',
    'Send samples and the price list',
    date_trunc('minute', now()) - make_interval(days => cast(10 + mod(t.g, 7) as integer))
        + make_interval(days => cast(7 + mod(t.g, 10) as integer)),
    t.owner,
    'seed',
    null,
    null,
    null,
    'KITCHEN_VISIT',
    'Kitchen',
    t.contacts,
    t.products
from targets as t
union all
select
    'VISIT',
    t.id,
    'PLANNED',
    null,
    date_trunc('day', now()) + make_interval(days => cast(7 + mod(t.g, 14) as integer), hours => 10),
    'Tasting of the samples',
    null,
    null,
    null,
    null,
    t.owner,
    'seed',
    null,
    null,
    null,
    'TASTING',
    'Kitchen',
    t.contacts,
    t.products
from targets as t
where mod(t.g, 3) = 0;
