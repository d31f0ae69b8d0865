-- Extensions and enumerated types of the customer domain.
set lock_timeout = '5s';
set statement_timeout = '60s';

create extension if not exists pg_trgm;

create type customer_type as enum (
    'RESTAURANT',
    'HOTEL',
    'CANTEEN',
    'CATERING',
    'OTHER'
);

create type customer_status as enum (
    'LEAD',
    'PROSPECT',
    'ACTIVE',
    'INACTIVE',
    'ARCHIVED'
);

create type contact_role as enum (
    'OWNER',
    'GENERAL_MANAGER',
    'HEAD_CHEF',
    'CHEF',
    'PURCHASING',
    'FOOD_AND_BEVERAGE_MANAGER',
    'OTHER'
);
