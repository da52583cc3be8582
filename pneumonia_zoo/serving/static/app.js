// Progressive enhancement only: every form works without this file.
// Adds drag-and-drop onto the upload boxes and shows the chosen file's name.
document.documentElement.classList.add("has-js");

document.querySelectorAll("form[data-dropzone]").forEach((form) => {
  const zone = form.querySelector(".dropzone");
  const input = form.querySelector("input[type=file]");
  const label = form.querySelector(".dropzone-file");
  const show = () => { label.textContent = input.files.length ? input.files[0].name : ""; };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.classList.add("is-dragover");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("is-dragover")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      show();
    }
  });
});
