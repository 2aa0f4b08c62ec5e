-- Rows for schema.sql: edge cases of every type, plus bulk rows.
INSERT INTO members (id, email, name, active, mood, balance, big, whole, score, ratio, small,
                   created_at, updated_at, birthday, wake_up, trial, prefs, raw, tags, scores,
                   avatar, ip)
VALUES
 (1, 'Ada@example.com', 'Ada Lovelace', true, 'happy', 12.50, 123456789012345678901234567890.123456789,
  1234567890, 0.1, 0.1, -100, '2024-01-02 03:04:05.123456+00', '2024-01-02 03:04:05',
  '1815-12-10', '07:30:00', '1 day 2 hours', '{"theme": "dark", "n": [1, 2.5, null]}',
  '{ "spaced" :  true }', '{a,"b c",NULL,"q''uote"}', '{1,2,3}', '\x00ff00', '192.168.0.1'),
 (2, 'bob@example.com', 'Bób ☃ 🎉', false, 'it''s complicated', 0, 'NaN', 0, 'NaN', '-0', 100,
  'infinity', '-infinity', 'infinity', NULL, NULL, '[]', 'null', '{}', '{{1,2},{3,4}}', '', NULL),
 (3, 'carol@example.com', NULL, true, NULL, 99999999.99, '-0.0000001', -5, '-Infinity', 3.4e38, NULL,
  '0044-03-15 12:00:00+00 BC', '1970-01-01 00:00:00.000001', '2000-02-29', '23:59:59.999999',
  'P1Y2M', '{"emoji": "🎉", "quote": "it''s"}', NULL, '{"multi\nline"}', NULL, NULL, '::1'),
 (4, 'dave@example.com', 'Dave', true, 'sad', 1.5, '1e-20', 42, 1.7976931348623157e308, 1.5, 7,
  '1999-12-31 23:59:59.999+05:30', '2030-06-15 12:00:00.5', '0001-01-01', '00:00:00', '-3 days',
  '{"a": {"b": {"c": [true, false]}}}', '[1, "two", {"three": 3}]', '{x}', '{-1}',
  decode(repeat('ab', 500), 'hex'), '10.0.0.0/8');
INSERT INTO members (id, email, name, balance, created_at, tags, score)
SELECT g, 'user' || g || '@example.com', 'User ' || g, (g % 1000) / 7.0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 seconds 123457 microseconds',
       ARRAY['t' || (g % 5)], g / 3.0
FROM generate_series(5, 300) g;
SELECT setval(pg_get_serial_sequence('members', 'id'), 1000);

INSERT INTO chats (id, user_id, title, visibility, created_at)
SELECT md5('chat' || g)::uuid, 1 + g % 300, 'Chat ' || g || ' ''quoted''; -- not a comment',
       CASE WHEN g % 3 = 0 THEN 'public' ELSE 'private' END,
       timestamptz '2024-02-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 400) g;

-- Messages: children usually point at earlier rows, but some at later ones (id order),
-- so a keyset copy meets rows whose parent is not there yet.
INSERT INTO messages (id, chat_id, parent_id, role, parts, created_at)
SELECT g, md5('chat' || (1 + g % 400))::uuid, NULL,
       (ARRAY['user', 'assistant', 'system'])[1 + g % 3],
       jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'message ' || g)),
       timestamptz '2024-03-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, 3000) g;
UPDATE messages SET parent_id = CASE WHEN id % 10 = 0 THEN id + 5 ELSE id - 1 END
WHERE id > 1 AND id <= 2990;
SELECT setval(pg_get_serial_sequence('messages', 'id'), 5000);

INSERT INTO chat_tags (chat_id, tag)
SELECT md5('chat' || g)::uuid, t FROM generate_series(1, 400) g, unnest(ARRAY['work', 'fun']) t
WHERE g % 2 = 0 OR t = 'work';

INSERT INTO events (at, kind, payload)
SELECT timestamptz '2024-04-01 00:00:00+00' + (g % 50) * interval '1 hour',
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'kind' || (g % 4) END,
       jsonb_build_object('g', g % 100)
FROM generate_series(1, 1200) g;  -- duplicates on purpose: the table has no key

-- Supabase auth: bcrypt hashes of 'correct horse 1' and 'correct horse 2' (cost 4)
INSERT INTO auth.users (id, aud, role, email, encrypted_password, email_confirmed_at,
                        raw_app_meta_data, raw_user_meta_data, is_anonymous, created_at, updated_at)
VALUES
 ('11111111-1111-4111-8111-111111111111', 'authenticated', 'authenticated', 'ann@example.com',
  :'hash1', '2024-01-05 10:00:00+00', '{"provider": "email", "role": "admin"}',
  '{"full_name": "Ann Example", "avatar_url": "https://example.com/ann.png"}', false,
  '2024-01-01 00:00:00+00', '2024-01-06 00:00:00+00'),
 ('22222222-2222-4222-8222-222222222222', 'authenticated', 'authenticated', 'ben@example.com',
  :'hash2', NULL, '{"provider": "github"}', '{"name": "Ben"}', false,
  '2024-02-01 00:00:00+00', NULL),
 ('33333333-3333-4333-8333-333333333333', 'authenticated', 'authenticated', NULL,
  NULL, NULL, '{}', '{}', true, '2024-03-01 00:00:00+00', NULL);
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at)
VALUES
 ('11111111-1111-4111-8111-111111111111', '11111111-1111-4111-8111-111111111111',
  '{"sub": "11111111-1111-4111-8111-111111111111", "email": "ann@example.com"}', 'email',
  '2024-01-01 00:00:00+00'),
 ('4242', '22222222-2222-4222-8222-222222222222', '{"sub": "4242"}', 'github',
  '2024-02-01 00:00:00+00');
