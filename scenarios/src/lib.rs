//! The chart's install modes and the scenario tests that prove them.
