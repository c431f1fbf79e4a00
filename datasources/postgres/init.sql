-- The demo emails as a PostgreSQL table, for the docker-compose stack (run
-- once by the postgres image from /docker-entrypoint-initdb.d) and for the
-- tests (`psql -v emails_file=… -f init.sql`). Also installs the trigger
-- that lets tributary follow new and changed rows live (`live = "notify"`).

\if :{?emails_file}
\else
\set emails_file /datasources/demo/emails.ndjson
\endif

CREATE TABLE emails (
    id             text PRIMARY KEY,
    date           timestamptz,
    "from"         text,
    "to"           text[],
    cc             text[],
    subject        text,
    thread         text,
    body           text,
    size_bytes     bigint,
    has_attachment boolean,
    attachments    text[],
    organisation   text
);

-- One JSON record a line, read verbatim (CSV with a quote and a delimiter
-- that never occur), then spread into the columns by name.
CREATE TEMPORARY TABLE emails_ndjson (doc jsonb);
-- (\copy cannot take a variable: the command is written out first.)
SELECT format($$\copy emails_ndjson (doc) FROM %L WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')$$, :'emails_file') AS copy_emails \gset
:copy_emails
INSERT INTO emails SELECT r.* FROM emails_ndjson, jsonb_populate_record(NULL::emails, doc) AS r;

-- Full-text search uses these (tributary matches with the `simple` configuration).
CREATE INDEX emails_subject_fts ON emails USING gin (to_tsvector('simple', subject));
CREATE INDEX emails_body_fts ON emails USING gin (to_tsvector('simple', body));

-- Live queries: every new or changed row's id on the channel `tributary_emails`.
CREATE FUNCTION tributary_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER emails_notify AFTER INSERT OR UPDATE ON emails
    FOR EACH ROW EXECUTE FUNCTION tributary_notify('tributary_emails');
