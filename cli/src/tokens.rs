//! `weir tokens create OWNER`: issues an API token. The log keeps only its sha256
//! (`TokenCreated`); the token itself is printed once and never again.

use anyhow::Result;
use weir_events::Owner;
use weir_journal::Journal;

#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Issue a token for OWNER and print it (shown once)
    Create {
        owner: Owner,
        /// {"owner", "token", "token_id"} on one line
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(journal: &Journal, command: TokensCommand) -> Result<i32> {
    match command {
        TokensCommand::Create { owner, json } => {
            let issued = weir_gateway::create_token(journal, &owner).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"owner": issued.owner.to_string(), "token": issued.token, "token_id": issued.token_id})
                );
            } else {
                println!("{}", issued.token);
                eprintln!(
                    "weir: token {} for {} (only its hash is stored; this is the one time it is shown)",
                    issued.token_id, issued.owner
                );
            }
            Ok(0)
        }
    }
}
