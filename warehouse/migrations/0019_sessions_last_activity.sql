-- The history list selects the sessions overlapping a period: started before its end and last
-- active (ended, last sampled or started) at or after its start. sessions_started only bounds
-- the first from above, so a fleet's last 30 days (30,600 of 365,000 sessions) scanned the whole
-- table (~90-140 ms on the dashboard benchmark); this index bounds the second (~40 ms).
-- Cost: an open session's update of last_sample_at/ended_at changes an indexed value, so it is
-- no longer a HOT update (one more index entry per pipeline write of an open session).
create index if not exists sessions_last_activity on sessions ((coalesce(ended_at, last_sample_at, started_at)));
