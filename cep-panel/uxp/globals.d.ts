// What the UXP runtime provides besides the typed modules: CommonJS require/module (UXP plugins
// are CommonJS), used only by the UMD wrappers.
declare function require(name: "premierepro"): import("@adobe/premierepro").premierepro;
declare function require(name: string): any;
declare var module: { exports: any };
// The panel's modules hang off window.SFX (UMD pattern shared with the CEP build).
interface Window {
  SFX: any;
}
