-- One row per asset per data-quality run (warehouse/dq.py): the batch window it validated and its
-- counts; the results themselves are in data_quality_results (same run_id and asset). A run whose
-- window reached the present is "incremental": the next run without --since starts where the
-- latest incremental window ended. Ad-hoc re-checks of a past window (--until) do not move it.
create table if not exists data_quality_runs (
    run_id              text not null,
    asset               text not null,
    since               timestamptz not null,
    until               timestamptz not null,
    row_count           bigint not null,
    expectations        integer not null,
    failed              integer not null,
    incremental         boolean not null,
    ran_at              timestamptz not null,
    primary key (run_id, asset),
    check (since <= until)
);
create index if not exists data_quality_runs_incremental on data_quality_runs (asset, until desc) where incremental;
create index if not exists data_quality_results_ran on data_quality_results (ran_at desc);
