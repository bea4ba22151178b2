//! One integration-test binary (one link instead of many). Each module tests one capability against
//! local servers and private home folders; see `support`.

mod agent_page;
mod api;
mod api_hardening;
mod api_trust;
mod cli_update;
mod data_dir;
mod delta;
mod demo;
mod download;
mod feed;
mod github;
mod hardening;
mod install;
mod models;
mod owner;
mod pack;
mod selfupdate;
mod supervisor;
mod support;
mod ui;
mod update_flow;
mod verify;
