"""Help → Report a problem: collect logs and versions into a zip the user can send."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from workers.report import write_report


class ReportDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Report a problem")
        self.report_path = None
        self.info = QLabel(
            "Hearth collects its log files, package versions and basic machine facts "
            "into one zip file. Prompts, chats and images are not included."
        )
        self.info.setWordWrap(True)
        self.include_history = QCheckBox("Also include the job history (contains your prompts)")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setOpenExternalLinks(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.create = self.buttons.addButton("Create report", QDialogButtonBox.ButtonRole.ActionRole)
        self.create.clicked.connect(self.create_report)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.info, self.include_history, self.result, self.buttons):
            layout.addWidget(widget)

    def create_report(self) -> None:
        try:
            self.report_path = write_report(include_history=self.include_history.isChecked())
        except OSError as exc:
            self.result.setText(f"Could not write the report: {exc}")
            return
        folder = QUrl.fromLocalFile(str(self.report_path.parent)).toString()
        self.result.setText(f'Report written to <a href="{folder}">{self.report_path}</a>')
