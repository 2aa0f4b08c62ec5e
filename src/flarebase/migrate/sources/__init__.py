"""Sources a migration reads from: Postgres (Neon, Supabase), SQLite / LibSQL files."""
