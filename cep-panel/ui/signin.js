/* Sign-in: server address, email and password; the device is named after the machine. */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;

  SFX.Views.SignIn = {
    mount: function (ctx) {
      var state = ctx.state;
      var settings = ctx.settings;
      var api = ctx.api;

      function setError(message) {
        $("signin-error").textContent = message;
        D.show($("signin-error"), !!message);
      }

      function showSignIn(message) {
        ctx.cancelGeneration();
        state.set({ me: null, view: "signin" });
        $("signin-server").value = settings.serverUrl;
        $("signin-server-label").textContent = settings.serverUrl.replace(/^https?:\/\//, "");
        $("signin-device").textContent = ctx.deviceName;
        setError(message || "");
        setTimeout(function () {
          ($("signin-email").value ? $("signin-password") : $("signin-email")).focus();
        }, 0);
      }

      function loginError(error) {
        if (error.code === "network") return "Can't reach " + settings.serverUrl + ". Check the server address and your connection.";
        if (error.status === 426) {
          ctx.handleError(error);
          return "This panel is too old for the server. Install the update shown above, then sign in.";
        }
        if (error.code === "email_not_verified") {
          return "Verify your email: we sent a link to " + ((error.details && error.details.email) || $("signin-email").value.trim()) + ". Open it, then sign in.";
        }
        if (error.status === 429) return "Too many attempts. Try again in " + (error.retryAfter || 60) + " s.";
        if (error.status === 401) return error.code === "account_suspended" ? error.message : "Email or password is not right.";
        return error.message;
      }

      D.on($("signin-form"), "submit", function (event) {
        event.preventDefault();
        var email = $("signin-email").value.trim();
        var password = $("signin-password").value;
        var server = $("signin-server").value.trim().replace(/\/+$/, "");
        if (!email || !password) return setError("Enter your email and password.");
        if (server && server !== settings.serverUrl) ctx.changeServer(server);
        $("signin-submit").disabled = true;
        setError("");
        api
          .login(email, password, ctx.deviceName)
          .then(
            function () {
              $("signin-password").value = "";
              ctx.enterMain();
            },
            function (error) {
              setError(loginError(error));
            }
          )
          .then(function () {
            $("signin-submit").disabled = false;
          });
      });
      D.on($("signin-server-toggle"), "click", function () {
        var open = $("signin-server-box").hidden;
        D.show($("signin-server-box"), open);
        $("signin-server-toggle").setAttribute("aria-expanded", String(open));
        if (open) $("signin-server").focus();
      });
      D.on($("signin-signup"), "click", function (event) {
        event.preventDefault();
        ctx.host.openURL(($("signin-server").value.trim() || settings.serverUrl).replace(/\/+$/, "") + "/signup");
      });

      ctx.showSignIn = showSignIn;
    },
  };
})();
