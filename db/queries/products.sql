-- name: list_products
-- Keyset page ordered by SKU (unique). allergen_free: none of the given allergen groups.
select
    product_json(p) as body,
    p.sku as sort_sku
from product as p
where (cast(:category as product_category) is null or p.category = cast(:category as product_category))
  and (
      cast(:q as text) is null
      or p.name ilike crm_contains_pattern(:q)
      or p.sku ilike crm_contains_pattern(:q)
  )
  and (cast(:sample_available as boolean) is null or p.sample_available = cast(:sample_available as boolean))
  and (
      cast(:allergen_free as text[]) is null
      or not (p.allergens && cast(cast(:allergen_free as text[]) as allergen[]))
  )
  and (cast(:after_sku as text) is null or p.sku > :after_sku)
order by p.sku
limit :limit;

-- name: get_product^
select
    product_json(p) as body
from product as p
where p.id = :id;

-- name: lock_product^
select
    crm_etag(p.id, p.version) as etag
from product as p
where p.id = :id
for update;

-- name: insert_product^
insert into product (
    sku,
    name,
    brand,
    category,
    pack_size,
    unit,
    allergens,
    diet_tags,
    sample_available,
    max_sample_quantity,
    description
)
values (
    :sku,
    :name,
    :brand,
    cast(:category as product_category),
    :pack_size,
    cast(:unit as product_unit),
    cast(cast(:allergens as text[]) as allergen[]),
    cast(cast(:diet_tags as text[]) as diet_tag[]),
    :sample_available,
    :max_sample_quantity,
    :description
)
on conflict (sku) do nothing
returning product_json(product) as body;

-- name: find_product_by_sku^
select
    p.id
from product as p
where p.sku = :sku;

-- name: update_product^
update product
set
    name = case when :set_name then :name else name end,
    brand = case when :set_brand then :brand else brand end,
    category = case when :set_category then cast(:category as product_category) else category end,
    pack_size = case when :set_pack_size then cast(:pack_size as numeric) else pack_size end,
    unit = case when :set_unit then cast(:unit as product_unit) else unit end,
    allergens = case
        when :set_allergens then cast(cast(:allergens as text[]) as allergen[])
        else allergens
    end,
    diet_tags = case
        when :set_diet_tags then cast(cast(:diet_tags as text[]) as diet_tag[])
        else diet_tags
    end,
    sample_available = case
        when :set_sample_available then cast(:sample_available as boolean)
        else sample_available
    end,
    max_sample_quantity = case
        when :set_max_sample_quantity then cast(:max_sample_quantity as bigint)
        else max_sample_quantity
    end,
    description = case when :set_description then :description else description end
where id = :id
returning product_json(product) as body;
