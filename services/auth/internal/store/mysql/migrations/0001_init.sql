-- The auth schema, MySQL/MariaDB flavour; sqlite/migrations/0001_init.sql is
-- the same schema for SQLite. Keep the two in step.
--
-- utf8mb4_bin: the caller canonicalises, the store compares exactly, byte
-- order is sort order (as with SQLite's BINARY collation). Sizes: an address
-- is at most 64 + 1 + 255 = 320 characters, a domain 255; in utf8mb4 a
-- VARCHAR(320) key takes 1280 bytes and PRIMARY KEY (source, destination)
-- 2560, under InnoDB's 3072-byte limit.
-- Times are integers: unix seconds (*_unix) or milliseconds (*_unix_ms).
-- Foreign keys RESTRICT deletes: a domain with users or aliases stays.
-- IF NOT EXISTS: MySQL commits each CREATE at once, so a run cut short
-- leaves some tables behind, and the rerun must step over them.

CREATE TABLE IF NOT EXISTS domains (
	name VARCHAR(255) NOT NULL PRIMARY KEY,
	created_unix BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS users (
	address VARCHAR(320) NOT NULL PRIMARY KEY,
	domain VARCHAR(255) NOT NULL,
	password_hash VARCHAR(512) NOT NULL,
	quota_bytes BIGINT NOT NULL DEFAULT 0,
	enabled BOOLEAN NOT NULL DEFAULT TRUE,
	created_unix BIGINT NOT NULL,
	CONSTRAINT users_domain FOREIGN KEY (domain) REFERENCES domains (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per (source, destination); source "@domain" is a catch-all.
CREATE TABLE IF NOT EXISTS aliases (
	source VARCHAR(320) NOT NULL,
	destination VARCHAR(320) NOT NULL,
	domain VARCHAR(255) NOT NULL,
	PRIMARY KEY (source, destination),
	INDEX aliases_destination (destination),
	CONSTRAINT aliases_domain FOREIGN KEY (domain) REFERENCES domains (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- key: an IP address or an account address.
CREATE TABLE IF NOT EXISTS login_failures (
	scope VARCHAR(16) NOT NULL,
	`key` VARCHAR(320) NOT NULL,
	failures INT NOT NULL,
	last_unix_ms BIGINT NOT NULL,
	PRIMARY KEY (scope, `key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
