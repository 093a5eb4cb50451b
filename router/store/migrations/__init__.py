"""The store's schema revisions (Alembic): `env.py`, the template of a new revision and
`versions/`, shipped inside the package so an installed wheel can upgrade a database. Run
them with `supportrouter db upgrade` (router/store/migrate.py); nothing reads an alembic.ini."""
