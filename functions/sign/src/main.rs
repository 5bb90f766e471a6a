//! `meridian-sign`: the sign function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_shared::function::main("sign", |config| async move {
        let clock = meridian_shared::clock::system();
        Ok(meridian_sign::router(
            meridian_sign::SignState::from_config(&config, clock).await?,
        ))
    })
    .await
}
