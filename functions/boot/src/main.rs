//! `meridian-boot`: the boot function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_shared::function::main("boot", |config| async move {
        Ok(meridian_boot::router(
            meridian_boot::BootState::from_config(&config).await?,
        ))
    })
    .await
}
