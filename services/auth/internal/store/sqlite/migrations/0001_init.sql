-- The auth schema, SQLite flavour; mysql/migrations/0001_init.sql is the
-- same schema for MySQL/MariaDB. Keep the two in step.
--
-- STRICT tables reject values of the wrong type instead of storing them.
-- Text compares with SQLite's default BINARY collation, byte for byte, like
-- utf8mb4_bin in MySQL: the caller canonicalises, the store compares exactly.
-- Times are integers: unix seconds (*_unix) or milliseconds (*_unix_ms).

CREATE TABLE domains (
	name TEXT NOT NULL PRIMARY KEY,
	created_unix INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
	address TEXT NOT NULL PRIMARY KEY,
	domain TEXT NOT NULL REFERENCES domains (name),
	password_hash TEXT NOT NULL,
	quota_bytes INTEGER NOT NULL DEFAULT 0,
	enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
	created_unix INTEGER NOT NULL
) STRICT;

CREATE INDEX users_domain ON users (domain);

-- One row per (source, destination); source "@domain" is a catch-all.
CREATE TABLE aliases (
	source TEXT NOT NULL,
	destination TEXT NOT NULL,
	domain TEXT NOT NULL REFERENCES domains (name),
	PRIMARY KEY (source, destination)
) STRICT;

CREATE INDEX aliases_domain ON aliases (domain);
CREATE INDEX aliases_destination ON aliases (destination);

-- `key` is quoted because MySQL reserves the word; SQLite accepts the quotes
-- too, so the store's statements are the same in both.
CREATE TABLE login_failures (
	scope TEXT NOT NULL,
	`key` TEXT NOT NULL,
	failures INTEGER NOT NULL,
	last_unix_ms INTEGER NOT NULL,
	PRIMARY KEY (scope, `key`)
) STRICT;
