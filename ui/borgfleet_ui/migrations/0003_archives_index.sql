-- Archive lists page by id within one repository: (repository_id, id) serves both the filter
-- and the order. The single-column id key duplicated the primary key.
ALTER TABLE archives ADD KEY ix_archives_repo_id (repository_id, id), DROP KEY ix_archives_list;
