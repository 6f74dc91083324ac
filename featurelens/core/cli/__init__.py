"""What commands share: option spellings, number checks, old spellings kept with a warning."""
