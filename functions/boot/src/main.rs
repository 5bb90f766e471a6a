//! `meridian-boot`: the boot function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_shared::function::main("boot", |config| async move {
        // Probes reach edges like clients do: public roots, the outbound time limits.
        let http = meridian_shared::outbound::client_builder(&config.outbound)
            .build()
            .map_err(|e| meridian_shared::Error::internal("building the probe client", e))?;
        Ok(meridian_boot::router(
            meridian_boot::BootState::from_config(&config, http).await?,
        ))
    })
    .await
}
