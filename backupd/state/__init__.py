"""The state database (`catalog.db` in the state dir) and its one owner.

`db.StateDB` is the only opener: it connects (WAL, foreign keys, full sync), turns a damaged file into
`StateCorrupt` naming the fix, and brings the schema to the version this code knows with the ordered
steps of `migrations` (`PRAGMA user_version`), refusing a file a newer backupd wrote. The catalog
(`engine.catalog`), the daemon's store (`daemon.store`) and the run-time destinations
(`config.overlay`) are repositories over a `StateDB`; `jobs.JobHistory` is the one job table they
share. `repair` moves a damaged file aside for `backupd catalog rebuild`, keeping what can be read.
"""
