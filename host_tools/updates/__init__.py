"""Updates: signed MCUboot images and their release."""
