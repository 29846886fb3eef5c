//! The ARI layer without Asterisk: the ARI client and the call flows against
//! the scripted fake ARI server (`voicepay_testkit::fake_ari`), and our
//! event models against the swagger JSON that ships with Asterisk.

mod ari_client;
mod ari_swagger;
mod assisted_fake_ari;
mod callback_fake_ari;
mod caller_id_fake_ari;
mod common;
mod dtmf_fake_ari;
mod inbound_code_fake_ari;
mod machine_fake_ari;
mod masquerade_fake_ari;
mod outbound_fake_ari;
mod prompt_outage_fake_ari;
mod resume_fake_ari;
mod ring_timeout_fake_ari;
mod transfer_inbound_fake_ari;
