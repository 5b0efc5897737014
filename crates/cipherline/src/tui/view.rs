//! Drawing the [`App`]: the conversation list, the conversation, the
//! member pane, transfers, the status bar and the input line; the help
//! screen over them. A pure function of the state (and the frame's size),
//! so snapshot tests draw it on ratatui's `TestBackend`.
//!
//! Every peer string goes through [`escape`] (or [`lines`]) here. Lines are
//! wrapped by this module, and every row that does not start an entry
//! starts with blanks: a peer padding a text cannot make its wrapped part
//! begin at the left margin, where only a time or a notice mark starts.

use cipherline_client::display::{escape, lines};
use cipherline_client::engine::{ConnectionState, Verified};
use cipherline_proto::app::{Target, fold_name};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};
use unicode_width::UnicodeWidthChar as _;

use super::app::{App, Conversation, Entry, Member};
use crate::slash::COMMANDS;

/// Narrower than this, only the conversation is drawn (no side panes).
pub const NARROW: u16 = 70;
/// The conversation list's width.
const LIST_WIDTH: u16 = 22;
/// The member pane's width.
const MEMBERS_WIDTH: u16 = 22;
/// What starts a wrapped row (the width of `HH:MM `).
const INDENT: &str = "      ";
/// The commands the TUI carries out (the others are `chat`'s for now).
const HANDLED: &[&str] = &[
    "/msg", "/join", "/leave", "/who", "/members", "/whois", "/verify", "/trust", "/create", "/invite", "/kick",
    "/help", "/quit",
];
/// Transfer bars drawn at most.
const MAX_BARS: usize = 3;

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let bars = app.transfers.len().min(MAX_BARS);
    let [body, transfers, status, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(u16::try_from(bars).unwrap_or(0)),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let wide = area.width >= NARROW;
    let room = matches!(app.conversation().map(|c| &c.target), Some(Target::Room(_)));
    let (list, main, members) = if wide {
        let members_width = if app.members { MEMBERS_WIDTH } else { 0 };
        let [list, main, members] = Layout::horizontal([
            Constraint::Length(LIST_WIDTH),
            Constraint::Min(20),
            Constraint::Length(members_width),
        ])
        .areas(body);
        (Some(list), main, app.members.then_some(members))
    } else {
        (None, body, None)
    };
    if let Some(list) = list {
        draw_list(app, frame, list);
    }
    draw_conversation(app, frame, main, !wide);
    if let (Some(members), Some(c)) = (members, app.conversation()) {
        draw_members(c, app.me.as_deref(), frame, members, room);
    }
    draw_transfers(app, frame, transfers);
    draw_status(app, frame, status);
    draw_input(app, frame, input);
    if app.help {
        draw_help(frame, area);
    }
}

/// A conversation's name as listed: `#room` or `@user`, escaped.
fn title(target: &Target) -> String {
    match target {
        Target::Room(r) => format!("#{}", escape(r)),
        Target::User(u) => format!("@{}", escape(u)),
    }
}

/// The end-to-end mark: `E` end to end, `o` open (the server can read
/// it), `?` not known yet.
fn mark(e2e: Option<bool>) -> (&'static str, Style) {
    match e2e {
        Some(true) => ("E", Style::new().fg(Color::Green)),
        Some(false) => ("o", Style::new().fg(Color::Yellow)),
        None => ("?", Style::new().fg(Color::DarkGray)),
    }
}

fn draw_list(app: &App, frame: &mut Frame, area: Rect) {
    // Scrolled so the conversation shown is in view.
    let height = usize::from(area.height.saturating_sub(2)).max(1);
    let skip = app.current.saturating_sub(height - 1);
    let rows: Vec<Line> = app
        .conversations
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, c)| {
            let shown = i == app.current;
            let (e2e, e2e_style) = mark(c.e2e);
            let mut name = title(&c.target);
            let unread = if c.unread > 0 { format!(" {}", c.unread.min(999)) } else { String::new() };
            let room_for = usize::from(area.width.saturating_sub(6)).saturating_sub(unread.len());
            name = clip(&name, room_for);
            let style = if shown { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
            Line::from(vec![
                Span::raw(if shown { ">" } else { " " }),
                Span::styled(e2e, e2e_style),
                Span::raw(" "),
                Span::styled(name, style),
                Span::styled(unread, Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(rows).block(Block::new().borders(Borders::ALL).title("conversations")), area);
}

/// `s` cut to `width` columns (with `…` when cut).
fn clip(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width.saturating_sub(1) && s.chars().map(|c| c.width().unwrap_or(0)).sum::<usize>() > width {
            out.push('…');
            return out;
        }
        used += w;
        out.push(c);
    }
    out
}

/// What follows a sender's name: nothing for the remembered key.
fn verdict(v: Verified) -> (&'static str, Style) {
    let alarm = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    match v {
        Verified::Known => ("", Style::new()),
        Verified::Verified => (" (verified)", Style::new().fg(Color::Green)),
        Verified::New => (" (new key)", Style::new().fg(Color::Yellow)),
        Verified::Unsigned => (" (unsigned)", Style::new().fg(Color::Yellow)),
        Verified::Changed => (" (KEY CHANGED)", alarm),
        Verified::Invalid => (" (FORGED OR ALTERED)", alarm),
    }
}

/// `HH:MM` in the app's time zone.
fn clock(app: &App, ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_zoned_datetime(app.tz.clone()).strftime("%H:%M").to_string(),
        Err(_) => "--:--".to_owned(),
    }
}

/// One entry as rows of `width` columns.
fn entry_rows(app: &App, entry: &Entry, width: usize) -> Vec<Line<'static>> {
    let mut rows = Vec::new();
    match entry {
        Entry::Message { from, text, at_ms, verified, unsigned, delivered, .. } => {
            let mine = verified.is_none();
            let name_style = if mine {
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
            } else {
                Style::new().add_modifier(Modifier::BOLD)
            };
            let (mark, mark_style) = match verified {
                // No other key was seen: only the name matches one remembered.
                Some(Verified::Changed) if *unsigned => {
                    (" (UNSIGNED: maybe not them)", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
                }
                Some(v) => verdict(*v),
                None => ("", Style::new()),
            };
            let mut text_lines = lines(text).into_iter();
            let first = text_lines.next().unwrap_or_default();
            let mut head = vec![
                Span::styled(format!("{} ", clock(app, *at_ms)), Style::new().fg(Color::DarkGray)),
                Span::styled(escape(from).into_owned(), name_style),
                Span::styled(mark, mark_style),
                Span::raw(": "),
                Span::raw(first),
            ];
            if *delivered {
                head.push(Span::styled(" ✓", Style::new().fg(Color::DarkGray)));
            }
            wrap(head, width, &mut rows);
            for more in text_lines {
                wrap(vec![Span::raw(format!("{INDENT}| {more}"))], width, &mut rows);
            }
        }
        Entry::Notice { text, alarm } => {
            let style = if *alarm { Style::new().fg(Color::Red) } else { Style::new().fg(Color::DarkGray) };
            let sign = if *alarm { "! " } else { "* " };
            wrap(vec![Span::styled(format!("{sign}{}", escape(text)), style)], width, &mut rows);
        }
    }
    rows
}

/// Wraps `spans` (escaped text) at `width` columns into `rows`, at a
/// blank where there is one; each row after the first starts with
/// [`INDENT`].
fn wrap(spans: Vec<Span<'static>>, width: usize, rows: &mut Vec<Line<'static>>) {
    let width = width.max(INDENT.len() + 8);
    let mut cells: Vec<(char, Style)> =
        spans.iter().flat_map(|span| span.content.chars().map(move |c| (c, span.style))).collect();
    let mut first = true;
    loop {
        let lead = if first { 0 } else { INDENT.len() };
        // How many cells fit in what is left of the row.
        let mut used = lead;
        let mut fit = 0;
        for (c, _) in &cells {
            let w = c.width().unwrap_or(0);
            if used + w > width {
                break;
            }
            used += w;
            fit += 1;
        }
        let rest = cells.len() - fit.min(cells.len());
        // Break after the last blank of the row, unless the word is longer
        // than a row (then it is cut).
        let take = if rest == 0 {
            fit
        } else {
            match cells.get(..fit).and_then(|row| row.iter().rposition(|(c, _)| *c == ' ')) {
                Some(blank) if blank > 0 => blank + 1,
                _ => fit.max(1),
            }
        };
        let row: Vec<(char, Style)> = cells.drain(..take.min(cells.len())).collect();
        let mut line: Vec<Span<'static>> = if first { Vec::new() } else { vec![Span::raw(INDENT)] };
        let mut piece = String::new();
        let mut style = row.first().map_or_else(Style::new, |(_, s)| *s);
        for (c, s) in row {
            if s != style && !piece.is_empty() {
                line.push(Span::styled(std::mem::take(&mut piece), style));
            }
            style = s;
            piece.push(c);
        }
        if !piece.is_empty() {
            line.push(Span::styled(piece, style));
        }
        rows.push(Line::from(line));
        first = false;
        if cells.is_empty() {
            return;
        }
    }
}

fn draw_conversation(app: &App, frame: &mut Frame, area: Rect, narrow: bool) {
    let Some(c) = app.conversation() else {
        frame.render_widget(Block::new().borders(Borders::ALL), area);
        return;
    };
    let what = match c.e2e {
        Some(true) => "end-to-end encrypted",
        Some(false) => "not end-to-end: the server can read it",
        None => "end to end: not known yet",
    };
    let mut heading = format!("{} · {what}", title(&c.target));
    if narrow {
        // Short, so that what waits elsewhere fits (there is no list).
        let what = match c.e2e {
            Some(true) => "end-to-end",
            Some(false) => "open",
            None => "?",
        };
        heading = format!("{} · {what}", title(&c.target));
        let unread: usize = app.conversations.iter().map(|c| c.unread).sum();
        if unread > 0 {
            heading.push_str(&format!(" · {unread} unread (Ctrl-N)"));
        }
    }
    let block = Block::new().borders(Borders::ALL).title(heading);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let height = usize::from(inner.height);
    let rows: Vec<Line<'static>> = c.entries.iter().flat_map(|e| entry_rows(app, e, width)).collect();
    let max_scroll = rows.len().saturating_sub(height);
    app.page.set(height);
    app.max_scroll.set(max_scroll);
    let scroll = c.scroll.min(max_scroll);
    let end = rows.len() - scroll;
    let start = end.saturating_sub(height);
    let mut shown: Vec<Line<'static>> = rows.into_iter().skip(start).take(end - start).collect();
    if scroll > 0
        && let Some(last) = shown.last_mut()
    {
        *last = Line::styled(
            format!("-- {scroll} more row(s) below: PgDn --"),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        );
    }
    if c.entries.is_empty() {
        shown.push(Line::styled("no messages yet", Style::new().fg(Color::DarkGray)));
    }
    frame.render_widget(Paragraph::new(shown), inner);
}

/// A member's key state, in words (`?` while not known).
fn member_state(m: &Member, me: Option<&str>) -> (&'static str, Style) {
    if me.is_some_and(|me| fold_name(me) == fold_name(&m.name)) {
        return ("you", Style::new().fg(Color::Cyan));
    }
    match m.state {
        Some(Verified::Verified) => ("verified", Style::new().fg(Color::Green)),
        Some(Verified::Known) => ("known", Style::new()),
        Some(Verified::New) => ("new", Style::new().fg(Color::Yellow)),
        Some(Verified::Changed) => ("CHANGED", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
        Some(Verified::Invalid) => ("FORGED", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
        Some(Verified::Unsigned) => ("unsigned", Style::new().fg(Color::Yellow)),
        None => ("no key", Style::new().fg(Color::DarkGray)),
    }
}

fn draw_members(c: &Conversation, me: Option<&str>, frame: &mut Frame, area: Rect, room: bool) {
    let width = usize::from(area.width.saturating_sub(2));
    let rows: Vec<Line> = c
        .members
        .iter()
        .map(|m| {
            let (state, style) = member_state(m, me);
            let name = clip(&escape(&m.name), width.saturating_sub(state.len() + 1));
            let pad = width.saturating_sub(name.chars().map(|c| c.width().unwrap_or(0)).sum::<usize>() + state.len());
            Line::from(vec![Span::raw(name), Span::raw(" ".repeat(pad)), Span::styled(state, style)])
        })
        .collect();
    let heading = if room { format!("members ({})", c.members.len()) } else { "people".to_owned() };
    frame.render_widget(Paragraph::new(rows).block(Block::new().borders(Borders::ALL).title(heading)), area);
}

fn draw_transfers(app: &App, frame: &mut Frame, area: Rect) {
    for (i, t) in app.transfers.iter().take(MAX_BARS).enumerate() {
        let row = Rect { y: area.y + u16::try_from(i).unwrap_or(0), height: 1, ..area };
        let ratio = if t.total == 0 { 0.0 } else { (t.done.min(t.total) as f64) / (t.total as f64) };
        let label = format!("{} {} {} {}/{} KiB", t.id, t.state, escape(&t.name), t.done / 1024, t.total / 1024);
        frame.render_widget(Gauge::default().ratio(ratio).label(label).gauge_style(Color::Blue), row);
    }
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let (text, style) = match &app.connection {
        ConnectionState::Connecting => (format!("connecting to {}…", app.server), Style::new().fg(Color::Yellow)),
        ConnectionState::Connected { name } => {
            (format!("connected as {} to {}", escape(name), app.server), Style::new().fg(Color::Green))
        }
        ConnectionState::Reconnecting { reason, retry_in } => (
            format!("reconnecting in {} s: {}", app.retry_left().unwrap_or(retry_in.as_secs()), escape(reason)),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
        ConnectionState::Stopped { reason } => {
            (format!("disconnected: {}", escape(reason)), Style::new().fg(Color::White).bg(Color::Red))
        }
    };
    let keys = " │ F1 help · Ctrl-N/P switch · PgUp/PgDn scroll · Ctrl-C quit";
    let line = Line::from(vec![Span::styled(text, style), Span::styled(keys, Style::new().fg(Color::DarkGray))]);
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_input(app: &App, frame: &mut Frame, area: Rect) {
    let prompt = match app.conversation().map(|c| &c.target) {
        Some(target) => format!("{}> ", title(target)),
        None => "> ".to_owned(),
    };
    let prompt = clip(&prompt, usize::from(area.width / 3));
    let prompt_width = prompt.chars().map(|c| c.width().unwrap_or(0)).sum::<usize>();
    let room = usize::from(area.width).saturating_sub(prompt_width + 1).max(1);
    // The text is the user's own; shown escaped all the same (a paste).
    let chars: Vec<String> = app.input.text().chars().map(|c| escape(&c.to_string()).into_owned()).collect();
    let cursor = app.input.cursor().min(chars.len());
    let before: usize =
        chars.iter().take(cursor).map(|s| s.chars().map(|c| c.width().unwrap_or(0)).sum::<usize>()).sum();
    // Scrolled so the cursor is in view.
    let mut skip = 0;
    let mut hidden = 0;
    while before - hidden > room {
        hidden += chars.get(skip).map_or(1, |s| s.chars().map(|c| c.width().unwrap_or(0)).sum::<usize>());
        skip += 1;
    }
    let text: String = chars.iter().skip(skip).map(String::as_str).collect();
    let line = Line::from(vec![Span::styled(prompt, Style::new().add_modifier(Modifier::BOLD)), Span::raw(text)]);
    frame.render_widget(Paragraph::new(line), area);
    let x = area.x + u16::try_from(prompt_width + before - hidden).unwrap_or(area.width);
    if !app.help {
        frame.set_cursor_position(Position { x: x.min(area.right().saturating_sub(1)), y: area.y });
    }
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = area.width.saturating_sub(4).min(78);
    let height = area.height.saturating_sub(2).min(34);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    let mut text: Vec<Line> = vec![
        Line::styled("keys", Style::new().add_modifier(Modifier::BOLD)),
        Line::raw("  Enter send · Tab complete names, rooms, commands · Up/Down input history"),
        Line::raw("  PgUp/PgDn, mouse wheel: scroll · Ctrl-N/Ctrl-P, Alt-Up/Down: next/previous conversation"),
        Line::raw("  F2 member pane · Ctrl-A/E/U/W edit · Ctrl-C quit · Esc close this"),
        Line::raw("  list marks: E end-to-end encrypted, o open (the server can read it), ? not known yet"),
        Line::raw("  key states: new (first seen), known, verified (codes compared), CHANGED (beware)"),
        Line::styled("commands", Style::new().add_modifier(Modifier::BOLD)),
        Line::raw("  TEXT                  say TEXT in the conversation shown"),
    ];
    text.extend(COMMANDS.iter().filter(|s| HANDLED.contains(&s.name)).map(|s| Line::raw(format!("  {}", s.usage))));
    let later: Vec<&str> = COMMANDS.iter().map(|s| s.name).filter(|n| !HANDLED.contains(n)).collect();
    text.push(Line::styled(
        format!("  in `cipherline chat` for now: {}", later.join(" ")),
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(Block::new().borders(Borders::ALL).title("help")),
        popup,
    );
}
