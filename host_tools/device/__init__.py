"""Device side: build, check, device libraries, provisioning, flashing."""
