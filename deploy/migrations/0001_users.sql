-- 0001_users.sql: the users of Ainbox. Every other table's rows belong to
-- one of them; the envelope's `user` field is users.id.
-- Owner: the accounts actor (sign-in, terms) once it exists.
create table users (
    id                bigserial primary key,
    email             text not null unique,
    name              text,
    picture           text,
    role              text not null default 'user' check (role in ('user', 'admin')),
    terms_version     text,
    terms_accepted_at timestamptz,
    created_at        timestamptz not null default now()
);
