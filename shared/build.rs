//! Extracts the four Swagger UI files `/docs` serves from the vendored release zip, so binaries
//! carry about 2 MB of assets instead of the whole 17 MB distribution (source maps, ES bundles).

use std::io::Read;
use std::path::PathBuf;

const FILES: [&str; 4] = [
    "swagger-ui.css",
    "index.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let zip = std::io::Cursor::new(utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED);
    let mut archive = zip::ZipArchive::new(zip).expect("the vendored Swagger UI zip opens");
    for file in FILES {
        let suffix = format!("/dist/{file}");
        let name = archive
            .file_names()
            .find(|n| n.ends_with(&suffix))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("Swagger UI's dist has no {file}"));
        let mut bytes = Vec::new();
        archive
            .by_name(&name)
            .and_then(|mut f| f.read_to_end(&mut bytes).map_err(Into::into))
            .unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        std::fs::write(out.join(file), bytes).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
}
