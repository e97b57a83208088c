"""Infrastructure: MongoDB repositories and indexes, Kafka publishers."""
