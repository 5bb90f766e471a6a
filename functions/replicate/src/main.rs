//! `meridian-replicate`: the replicate function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_shared::function::main("replicate", |config| async move {
        let state = meridian_replicate::ReplicateState::from_config(&config).await?;
        Ok(meridian_replicate::router(state))
    })
    .await
}
