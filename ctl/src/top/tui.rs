//! The terminal half of `nrv-ctl top`, kept thin: set the terminal up (raw mode, the alternate
//! screen) and restore it on every way out (return, error, panic), wait for keys, refreshes
//! and action answers at once, and draw the [`View`].

use super::view::{self, Effect, Key, Row, Tone, View};
use super::TopCmd;
use crate::cli::Invocation;
use crate::commands::{command_line, connect, escape_for_terminal, state_text, uptime, STOP_WAIT};
use crate::{Client, CtlError};
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use nerve_proto::ProcessInfo;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table, TableState};
use ratatui::{Frame, Terminal};
use std::io::Write;

/// Puts the terminal back as it was: leaves the alternate screen, shows the cursor, ends raw
/// mode. Safe to call more than once; errors are ignored (there is nothing better to do on the
/// way out).
fn restore_terminal() {
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// While alive, the terminal is in raw mode on the alternate screen; dropping it restores the
/// terminal. It also installs a panic hook that restores the terminal before the panic message
/// is printed (so the message is readable and the shell usable), then runs the previous hook.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        crossterm::terminal::enable_raw_mode()?;
        // From here on, a failure is cleaned up by the guard's Drop.
        let guard = TerminalGuard;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// crossterm's key event as a [`Key`]; `None` for releases and keys the view has no use for.
fn key_of(event: KeyEvent) -> Option<Key> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    Some(match event.code {
        KeyCode::Char('c') if ctrl => Key::CtrlC,
        KeyCode::Char(c) if !ctrl => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

/// A refresh in flight: it owns the client (connecting a new one when the last failed) and
/// gives it back with the rows or the failure's text.
type Refresh<'a> = LocalBoxFuture<'a, (Option<Client>, Result<Vec<ProcessInfo>, String>)>;

fn refresh<'a>(invocation: &'a Invocation, cmd: &'a TopCmd, client: Option<Client>) -> Refresh<'a> {
    Box::pin(async move {
        let mut client = match client {
            Some(client) => client,
            None => match connect(invocation).await {
                Ok((client, _)) => client,
                Err(e) => return (None, Err(e.to_string())),
            },
        };
        match super::fetch(invocation, &mut client, cmd).await {
            Ok(rows) => (Some(client), Ok(rows)),
            // Start afresh next time: the connection may be what failed.
            Err(e) => (None, Err(e.to_string())),
        }
    })
}

/// An action in flight, on a connection of its own (a restart can take as long as the
/// process's stop wait, and the view keeps refreshing meanwhile): its result line.
fn act(invocation: &Invocation, action: view::Action) -> LocalBoxFuture<'_, String> {
    Box::pin(async move {
        let (mut client, _) = match connect(invocation).await {
            Ok(connected) => connected,
            Err(e) => return format!("{}: {e}", action.describe()),
        };
        match client
            .request_within(action.request(), invocation.timeout + STOP_WAIT)
            .await
        {
            Ok(reply) => view::reply_text(&action, &reply),
            Err(e) => format!("{}: {e}", action.describe()),
        }
    })
}

/// The full-screen loop: refresh every `--interval`, a key at a time, until `q`, Ctrl-C or
/// `--iterations` refreshes.
///
/// # Errors
/// [`CtlError::Output`] when the terminal cannot be set up, read or drawn on.
pub async fn run(invocation: &Invocation, cmd: &TopCmd, out: &mut impl Write) -> Result<(), CtlError> {
    let guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(&mut *out))?;
    terminal.clear()?;
    let mut view = View::new();
    let mut table = TableState::default();
    let mut keys = EventStream::new();
    let mut ticker = tokio::time::interval(cmd.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<Client> = None;
    let mut refreshing: Option<Refresh<'_>> = None;
    let mut acting: Option<LocalBoxFuture<'_, String>> = None;
    let mut refreshes = 0u64;
    loop {
        terminal.draw(|frame| draw(frame, &view, &mut table, invocation, cmd))?;
        if cmd.iterations.is_some_and(|n| refreshes >= n) {
            break;
        }
        tokio::select! {
            _ = ticker.tick(), if refreshing.is_none() => {
                refreshing = Some(refresh(invocation, cmd, client.take()));
            }
            (back, rows) = async { refreshing.as_mut().expect("guarded by is_some").await }, if refreshing.is_some() => {
                refreshing = None;
                client = back;
                refreshes += 1;
                match rows {
                    Ok(rows) => view.update(rows),
                    Err(e) => view.failed(format!("refresh failed: {e}")),
                }
            }
            line = async { acting.as_mut().expect("guarded by is_some").await }, if acting.is_some() => {
                acting = None;
                view.finished(line);
            }
            event = keys.next() => match event {
                Some(Ok(Event::Key(event))) => {
                    let Some(key) = key_of(event) else { continue };
                    match view.key(key) {
                        Effect::None => {}
                        Effect::Quit => break,
                        Effect::Act(action) => acting = Some(act(invocation, action)),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CtlError::Output(e)),
                None => break,
            },
        }
    }
    drop(terminal);
    drop(guard);
    Ok(())
}

/// The colour of a [`Tone`].
fn color(tone: Tone) -> Style {
    match tone {
        Tone::Good => Style::new().fg(Color::Green),
        Tone::Pending => Style::new().fg(Color::Yellow),
        Tone::Bad => Style::new().fg(Color::Red),
        Tone::Unknown => Style::new().fg(Color::DarkGray),
        Tone::Plain => Style::new(),
    }
}

/// The columns: a header and a width each (`COMMAND` takes what is left).
const COLUMNS: [(&str, u16); 11] = [
    ("ID", 12),
    ("NAME", 14),
    ("PID", 7),
    ("STATE", 12),
    ("UPTIME", 7),
    ("CPU%", 6),
    ("RSS", 9),
    ("CPU HISTORY", view::SPARK_SAMPLES as u16),
    ("HOST", 8),
    ("CENTER", 8),
    ("COMMAND", 0),
];

fn cells(row: &Row) -> [String; 11] {
    let p = &row.process;
    let id = p.id.to_string();
    [
        id[..12].to_string(),
        escape_for_terminal(&p.name).into_owned(),
        p.pid.map(|pid| pid.to_string()).unwrap_or_else(|| "-".into()),
        state_text(p),
        uptime(p.uptime_secs),
        p.stats
            .map(|s| format!("{:.1}", s.cpu_percent))
            .unwrap_or_else(|| "-".into()),
        p.stats
            .map(|s| bytesize::ByteSize(s.rss_bytes).display().iec_short().to_string())
            .unwrap_or_else(|| "-".into()),
        row.spark.clone(),
        escape_for_terminal(&p.host).into_owned(),
        escape_for_terminal(&p.center).into_owned(),
        escape_for_terminal(&command_line(p)).into_owned(),
    ]
}

/// Draws the title, the table, the status line and the prompt or key help.
fn draw(frame: &mut Frame<'_>, view: &View, table: &mut TableState, invocation: &Invocation, cmd: &TopCmd) {
    let rows = view.rows();
    let [title, body, status, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(format!(
            "nrv-ctl top  {}  {} processes  sorted by {}  every {}",
            invocation.control,
            rows.len(),
            view.sort.as_str(),
            crate::cli::secs(cmd.interval)
        ))
        .style(Style::new().add_modifier(Modifier::BOLD)),
        title,
    );
    let header = TableRow::new(COLUMNS.iter().map(|(name, _)| Cell::from(*name)))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let widths = COLUMNS.iter().map(|&(_, w)| match w {
        0 => Constraint::Fill(1),
        w => Constraint::Length(w),
    });
    let lines = rows.iter().map(|row| {
        let state_style = color(view::tone(&row.process));
        TableRow::new(cells(row).into_iter().enumerate().map(|(i, text)| {
            let cell = Cell::from(text);
            if COLUMNS[i].0 == "STATE" {
                cell.style(state_style)
            } else {
                cell
            }
        }))
    });
    table.select(view.selected_index());
    frame.render_stateful_widget(
        Table::new(lines, widths)
            .header(header)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        body,
        table,
    );
    let status_text = view.status.as_deref().map(escape_for_terminal).unwrap_or_default();
    frame.render_widget(Paragraph::new(Line::from(status_text.into_owned())), status);
    let help_text = view
        .prompt()
        .unwrap_or_else(|| "q quit  c/m/n sort by cpu/memory/name  ↑/↓ select  s signal  k stop  r restart".into());
    frame.render_widget(
        Paragraph::new(escape_for_terminal(&help_text).into_owned())
            .style(Style::new().add_modifier(Modifier::REVERSED)),
        help,
    );
}
