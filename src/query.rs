//! Read-only queries over the published tables (`tenure query`): every mart
//! under `<warehouse>/marts/`, plus `events` and `rejects`, registered in a
//! session that refuses DDL, DML and statements, so SQL from a user can never
//! write or reach files outside the published tables.

use crate::cli::OutputFormat;
use crate::config::Config;
use crate::storage::{Location, Storage};
use anyhow::Context;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

/// Names of the published marts in a warehouse.
pub async fn published_marts(warehouse: &Location) -> anyhow::Result<Vec<String>> {
    let marts = warehouse.join("marts");
    let listing = marts
        .store
        .list_with_delimiter(Some(&marts.prefix))
        .await
        .with_context(|| format!("cannot list {}", marts.display()))?;
    let mut names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// A session with every published table registered, read-only.
pub async fn session(storage: &Storage, warehouse: &Location) -> anyhow::Result<SessionContext> {
    let ctx = crate::engine::session();
    for name in published_marts(warehouse).await? {
        let location = crate::publish::mart_location(warehouse, &name);
        let table = storage.delta_table(&location).await?;
        if table.version().is_none() {
            continue;
        }
        table.update_datafusion_session(&ctx.state())?;
        ctx.register_table(name.as_str(), table.table_provider().await?)?;
    }
    crate::pipeline::register_sources(&ctx, storage, warehouse).await?;
    Ok(ctx)
}

pub async fn run_and_print(config: &Config, sql: &str, format: OutputFormat) -> anyhow::Result<()> {
    let storage = Storage::new(config.storage.clone());
    let warehouse = storage.location(&config.warehouse)?;
    let ctx = session(&storage, &warehouse).await?;
    let df = ctx
        .sql_with_options(sql, crate::engine::read_only())
        .await
        .context("query refused or invalid")?;
    let batches: Vec<_> = df.execute_stream().await?.try_collect().await?;
    let stdout = std::io::stdout();
    match format {
        OutputFormat::Table => println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?),
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(stdout.lock());
            for b in &batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(stdout.lock());
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
            println!();
        }
    }
    Ok(())
}
