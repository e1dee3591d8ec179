-- The recent samples of every pool (fleet/pools.py usage's growth window, history's chart points) read
-- from one range of an index that holds what they use, not the whole table: the pools page, the
-- dashboard and every /metrics scrape read them.
ALTER TABLE pool_samples ADD KEY ix_pool_samples_recent (sampled_at, server_id, pool_name, used_bytes);
