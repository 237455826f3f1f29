//! TODO: calendar.
