# Over-the-air updates: signed MCUboot images, slots, confirmation and rollback.
