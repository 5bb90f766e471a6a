//! `meridian-replicate`: the replicate function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_shared::function::main("replicate", |config| async move {
        let state = meridian_replicate::ReplicateState::from_config(&config).await?;
        if let Some(seconds) = config.replicate.reconcile_every_seconds {
            // Runs for the life of the process.
            state.spawn_periodic_reconcile(std::time::Duration::from_secs(seconds));
        }
        Ok(meridian_replicate::router(state))
    })
    .await
}
