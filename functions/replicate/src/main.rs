//! `meridian-replicate`: the replicate function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`), taking changes over HTTP and, when configured, pulling them from
//! a Pub/Sub subscription as well.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_shared::function::main("replicate", |config| async move {
        let state = meridian_replicate::ReplicateState::from_config(&config).await?;
        if let Some(seconds) = config.replicate.reconcile_every_seconds {
            // Runs for the life of the process.
            state.spawn_periodic_reconcile(std::time::Duration::from_secs(seconds));
        }
        if let Some(worker) = meridian_replicate::pull::PullWorker::connect(&config).await? {
            // Runs for the life of the process; what it holds when the process ends
            // comes back after the ack deadline.
            worker.spawn(state.clone(), tokio_util::sync::CancellationToken::new());
        }
        Ok(meridian_replicate::router(state))
    })
    .await
}
