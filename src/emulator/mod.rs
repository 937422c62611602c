//! Graph API emulator (being written).
