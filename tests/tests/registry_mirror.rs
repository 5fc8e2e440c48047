//! The test cloud's registry mirror serves the image the deployed operator runs, the way a worker
//! asks for it: through the mirror endpoint a NodePool names for `ghcr.io`, over TLS checked
//! against the CA in the mirror's `caBundle` only. `make operator-up` pushes the image there
//! when `make openstack-up` has started the registry (as `make test` does, in that order).

use anyhow::{Result, ensure};
use nestplane_e2e::registry;

#[tokio::test]
async fn the_mirror_serves_the_operator_image_with_its_ca() -> Result<()> {
    let client = nestplane_e2e::client().await?;
    let image = registry::operator_image(&client).await?;
    registry::ensure_served(&image).await?;

    let mirror = registry::mirror()?;
    ensure!(mirror.registry == registry::MIRRORED_REGISTRY);
    ensure!(
        image.starts_with(&format!("{}/", mirror.registry)),
        "the operator image {image} is not under the mirrored registry {}",
        mirror.registry
    );
    // The same tag under another name is not served: the check above looked at this image.
    let missing = format!("{image}-missing");
    ensure!(
        registry::ensure_served(&missing).await.is_err(),
        "{missing} was served too"
    );
    Ok(())
}
