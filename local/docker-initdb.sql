-- Run once by the postgres image on an empty volume (local/docker-compose.yml). The migrations
-- create coda_app only if it does not exist, so this password stays. Local use only.
CREATE ROLE coda_app LOGIN PASSWORD 'coda_app' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
