-- 0001_users: customers, their private profile data and their addresses.
--
-- Conventions used by every migration in this directory:
--   * Surrogate keys are "bigint GENERATED ALWAYS AS IDENTITY": standard SQL (unlike serial),
--     the sequence is owned by the column, and ALWAYS stops application code from inventing
--     ids that would later collide with the sequence (seed scripts that really need fixed ids
--     must say OVERRIDING SYSTEM VALUE, which makes the intent visible).
--   * bigint rather than integer because widening a key later rewrites the table and every
--     referencing table, while the extra 4 bytes per row cost almost nothing.
--   * Every foreign key spells out its ON DELETE rule so that the behaviour is a decision,
--     not the NO ACTION default nobody chose.
--   * Constraints are named so that the CLI can map a violation to a readable message.
--   * Status-like columns are text + CHECK rather than enum types: adding a value to a
--     CHECK is one ALTER in a transaction, while enum values cannot be removed or renamed.
--   * No semicolons or percent signs inside comments or literals, so that a naive
--     statement splitter or a DB-API driver doing parameter substitution cannot trip.

CREATE TABLE users (
    user_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text        NOT NULL,
    name       text        NOT NULL,
    -- Tier drives pricing and reporting segments, so a typo must be rejected at write time.
    tier       text        NOT NULL DEFAULT 'standard'
               CONSTRAINT users_tier_check
               CHECK (tier IN ('standard', 'silver', 'gold', 'platinum')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Mail servers treat the address as case-insensitive in practice, so Alice@x.com and
-- alice@x.com are the same person. A unique index on lower(email) gives that without the
-- citext extension (which needs CREATE EXTENSION rights and changes the column type seen
-- by drivers). Lookups must use WHERE lower(email) = lower($1) to hit this index.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Sign-up reports filter and sort by registration date.
CREATE INDEX users_created_at_idx ON users (created_at);


-- One-to-one: kept out of "users" because these columns are sensitive, optional and
-- rarely read, so the hot users rows stay narrow and access to PII can be granted
-- separately. The primary key IS the foreign key, which is what makes it 1:1.
CREATE TABLE user_profiles (
    -- A profile has no meaning without its user, so it goes with the user.
    user_id          bigint PRIMARY KEY
                     CONSTRAINT user_profiles_user_id_fkey
                     REFERENCES users (user_id) ON DELETE CASCADE,
    -- phone and date_of_birth are text on purpose: the application may store them
    -- encrypted (ciphertext is not a valid date or phone number), so no type or format
    -- constraint can be applied here.
    phone            text,
    date_of_birth    text,
    bio              text,
    -- Consent must be explicit, so the absence of an answer means "no".
    marketing_opt_in boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz DEFAULT now()
);

COMMENT ON COLUMN user_profiles.phone IS
    'May hold application-level ciphertext, hence text with no format check.';
COMMENT ON COLUMN user_profiles.date_of_birth IS
    'May hold application-level ciphertext, hence text rather than date.';


-- One-to-many: a user keeps several shipping and billing addresses.
CREATE TABLE addresses (
    address_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- An address book belongs to its owner. Orders do not depend on this cascade being
    -- blocked: orders.user_id is RESTRICT, so a user who ordered cannot be deleted anyway.
    user_id     bigint  NOT NULL
                CONSTRAINT addresses_user_id_fkey
                REFERENCES users (user_id) ON DELETE CASCADE,
    kind        text    NOT NULL
                CONSTRAINT addresses_kind_check CHECK (kind IN ('shipping', 'billing')),
    line1       text    NOT NULL,
    line2       text,
    city        text    NOT NULL,
    -- Nullable because several countries have no postal codes.
    postal_code text,
    -- ISO 3166-1 alpha-2. The regex (not just upper()) also rejects a single letter,
    -- which char(2) would otherwise silently pad with a space.
    country     char(2) NOT NULL
                CONSTRAINT addresses_country_check CHECK (country ~ '^[A-Z]{2}$'),
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Redundant as a uniqueness rule (address_id alone is unique) but needed as the target
    -- of orders' composite foreign key, which guarantees an order ships to an address of
    -- the customer who placed it.
    CONSTRAINT addresses_address_id_user_id_key UNIQUE (address_id, user_id)
);

-- FK lookups (deleting a user, listing a user's addresses). The partial index below
-- cannot serve these because it only covers default rows.
CREATE INDEX addresses_user_id_idx ON addresses (user_id);

-- At most one default shipping and one default billing address per user. A partial index
-- enforces this without a trigger and without a separate "default_address_id" column on
-- users (which would create a circular FK between users and addresses). To switch the
-- default, clear the old one and set the new one in the same transaction.
CREATE UNIQUE INDEX addresses_one_default_per_kind
    ON addresses (user_id, kind)
    WHERE is_default;
