//! `meridian-sign`: the sign function as a Cloud Run service (`$PORT`,
//! `MERIDIAN_CONFIG`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meridian_shared::function::main("sign", |config| async move {
        let state =
            meridian_sign::SignState::from_config(&config, meridian_shared::clock::system())?;
        Ok(meridian_sign::router(state))
    })
    .await?;
    Ok(())
}
