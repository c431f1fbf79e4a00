#!/usr/bin/env bash
# Loads target/tweets-100k.ndjson (see BENCHMARKS.md, "Setup") into the
# table bench.tweets100k of a PostgreSQL database, with the indexes the
# query mix can use, for the `pg_tweets100k` datasource of
# benches/loadgen.toml.
#
#   scripts/postgres-bench.sh [postgres://postgres@127.0.0.1:5432/test]
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/test}
records=${RECORDS:-target/tweets-100k.ndjson}
[ -f "$records" ] || { echo "$records is missing: run datagen first (BENCHMARKS.md, Setup)" >&2; exit 1; }
psql "$url" -q -v ON_ERROR_STOP=1 -v records="$(realpath "$records")" <<'SQL'
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.tweets100k (
    id text PRIMARY KEY, created_at timestamptz, text text, lang text, source text,
    "user" jsonb, mentions text[], hashtags text[], in_reply_to_screen_name text,
    retweet_count bigint, favorite_count bigint);
CREATE TEMPORARY TABLE ndjson (doc jsonb);
SELECT format($$\copy ndjson (doc) FROM %L WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')$$, :'records') AS copy_records \gset
:copy_records
INSERT INTO bench.tweets100k SELECT r.* FROM ndjson, jsonb_populate_record(NULL::bench.tweets100k, doc) AS r;
-- What the conditions tributary writes can use.
-- Full-text words are made at query time; each is first looked for with
-- LIKE on the lowercased value, which a trigram index serves.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX ON bench.tweets100k USING gin (lower(text) gin_trgm_ops);
CREATE INDEX ON bench.tweets100k (lower(("user" #> '{screen_name}') #>> '{}'));
CREATE INDEX ON bench.tweets100k ((CASE WHEN jsonb_typeof(("user" #> '{followers_count}')) = 'number' THEN (("user" #> '{followers_count}') #>> '{}')::numeric END));
ANALYZE bench.tweets100k;
SELECT count(*) AS loaded FROM bench.tweets100k;
SQL
