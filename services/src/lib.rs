//! The pipeline services (being built).
