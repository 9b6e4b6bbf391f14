//! Read models built from the event log (being built).
