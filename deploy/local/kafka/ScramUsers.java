// Adds (or resets) one user's SCRAM-SHA-256 and SCRAM-SHA-512 credentials on a running broker through
// the Admin API, as `kafka-configs --alter --entity-type users --add-config 'SCRAM-SHA-256=[...]'`
// does (that tool lives in the kafka-tools artifact, which the local stack does not fetch).
// Idempotent. deploy/local/stack.sh runs it once for a data dir formatted before the SASL_SSL
// listener existed; a data dir formatted since gets the users from `kafka-storage format --add-scram`.
//
//   java -cp '<kafka libs>/*' ScramUsers.java <bootstrap servers> <user> <password>
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

public class ScramUsers {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: ScramUsers.java <bootstrap servers> <user> <password>");
            System.exit(2);
        }
        String user = args[1], password = args[2];
        try (Admin admin = Admin.create(Map.of(
                AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0],
                AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000))) {
            // One request per mechanism: the broker refuses two alterations of one user in a request.
            for (ScramMechanism mechanism : List.of(ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)) {
                UserScramCredentialAlteration upsert =
                    new UserScramCredentialUpsertion(user, new ScramCredentialInfo(mechanism, 4096), password);
                admin.alterUserScramCredentials(List.of(upsert)).all().get();
            }
            System.out.println("SCRAM credentials set: "
                + admin.describeUserScramCredentials(List.of(user)).all().get());
        }
    }
}
