//! The peer of the window benchmark (`scripts/bench-window.sh`): the smallest eframe window, built with
//! the launcher's own eframe features, showing one label. With `PAI_BENCH_FRAMES=1` it prints
//! `frame <n> <unix ms>` on stderr for every frame it draws, as the launcher's window does.

fn main() -> eframe::Result {
    let report = std::env::var_os("PAI_BENCH_FRAMES").is_some();
    let mut frames = 0u64;
    eframe::run_ui_native(
        "bench-window",
        eframe::NativeOptions {
            viewport: egui::ViewportBuilder::default().with_inner_size([760.0, 680.0]),
            ..Default::default()
        },
        move |ui, _frame| {
            frames += 1;
            if report {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default();
                eprintln!("frame {frames} {ms}");
            }
            egui::CentralPanel::default().show(ui, |ui| {
                ui.label("A minimal eframe window");
            });
        },
    )
}
