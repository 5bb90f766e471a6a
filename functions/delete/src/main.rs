//! `meridian-delete`: the delete function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_shared::function::main("delete", |config| async move {
        let bucket = meridian_shared::storage::open(&config, &config.main().bucket).await?;
        let state = meridian_delete::DeleteState::new(bucket, &config.auth.secret()?);
        Ok(meridian_delete::router(state))
    })
    .await
}
