//! Our playbacks: one prompt at a time, the one still playing stopped
//! before the next starts.

use super::{Action, Ivr, Prompt};

impl Ivr {
    /// Starts a playback; one of ours still playing is stopped first so the
    /// new prompt is heard at once rather than queued behind it.
    pub(super) fn play(&mut self, media: Vec<String>, out: &mut Vec<Action>) -> String {
        if let Some(p) = self.prompt.take().filter(|p| !p.stopping) {
            out.push(Action::StopPlayback { playback_id: p.id });
        }
        self.playbacks += 1;
        let id = format!("p{}", self.playbacks);
        out.push(Action::Play {
            playback_id: id.clone(),
            media,
        });
        self.prompt = Some(Prompt {
            id: id.clone(),
            stopping: false,
        });
        id
    }
}
