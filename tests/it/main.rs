//! One integration-test binary (one link instead of many). Each module tests one capability against
//! local servers and private home folders; see `support`.

mod support;
mod github;
mod feed;
